/*
** seal.c: orch.core.seal, authenticated encryption of the sensitive values
** the state store keeps (infrastructure attributes, outputs, saved plans):
** AES-256-GCM from libcrypto, a fresh random nonce per value. The store can
** be copied, backed up or shared without the values being readable; the
** key lives outside it (state/sealed.lua). A lazy module, as digest.
*/
#include <string.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "orch.h"

#define SEAL_KEY 32
#define SEAL_NONCE 12
#define SEAL_TAG 16

/* seal.key() -> 32 random bytes, for a new store's key */
static int seal_key (lua_State *L) {
  unsigned char key[SEAL_KEY];
  if (RAND_bytes(key, sizeof key) != 1) return luaL_error(L, "no random bytes from libcrypto for a key");
  lua_pushlstring(L, (const char *)key, sizeof key);
  return 1;
}

static const unsigned char *seal_checkkey (lua_State *L, int arg) {
  size_t len;
  const char *key = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, len == SEAL_KEY, arg, "a key is 32 bytes");
  return (const unsigned char *)key;
}

/*
** Runs one GCM pass: encrypt (enc = 1) in to out and write the tag, or
** decrypt and check it. Returns 1 when it went through (and the tag held).
*/
static int seal_gcm (int enc, const unsigned char *key, const unsigned char *nonce,
                     const unsigned char *in, int len, unsigned char *out, unsigned char *tag) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, fin = 0;
  int ok = ctx != NULL
    && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc)
    && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE, NULL)
    && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc)
    && (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG, tag))
    && EVP_CipherUpdate(ctx, out, &n, in, len)
    && EVP_CipherFinal_ex(ctx, out + n, &fin) > 0
    && (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG, tag));
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

/* seal.seal(key, plain) -> nonce .. ciphertext .. tag, as base64 text */
static int seal_seal (lua_State *L) {
  const unsigned char *key = seal_checkkey(L, 1);
  size_t len;
  const char *plain = luaL_checklstring(L, 2, &len);
  size_t raw_len = SEAL_NONCE + len + SEAL_TAG;
  unsigned char *raw, *text;
  int ok;
  luaL_argcheck(L, len < (1u << 30), 2, "value too large to seal");
  raw = (unsigned char *)lua_newuserdatauv(L, raw_len, 0);
  text = (unsigned char *)lua_newuserdatauv(L, 4 * ((raw_len + 2) / 3) + 1, 0);
  ok = RAND_bytes(raw, SEAL_NONCE) == 1
    && seal_gcm(1, key, raw, (const unsigned char *)plain, (int)len, raw + SEAL_NONCE, raw + SEAL_NONCE + len);
  if (!ok) return luaL_error(L, "sealing a value failed in libcrypto");
  lua_pushlstring(L, (const char *)text, (size_t)EVP_EncodeBlock(text, raw, (int)raw_len));
  return 1;
}

/* seal.open(key, sealed) -> plain, or nil and why (a wrong key, or text
** that was changed: GCM's tag makes the two look the same) */
static int seal_open (lua_State *L) {
  const unsigned char *key = seal_checkkey(L, 1);
  size_t tlen, raw_len, pad = 0;
  const char *text = luaL_checklstring(L, 2, &tlen);
  unsigned char *raw, *plain;
  int n;
  if (tlen % 4 != 0 || tlen < 4 * ((SEAL_NONCE + SEAL_TAG + 2) / 3) || tlen > (1u << 31)) goto bad;
  raw = (unsigned char *)lua_newuserdatauv(L, tlen / 4 * 3, 0);
  n = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)tlen);
  if (n < 0) goto bad;
  while (pad < 2 && text[tlen - 1 - pad] == '=') pad++;   /* DecodeBlock counts padding as bytes */
  raw_len = (size_t)n - pad;
  if (raw_len < SEAL_NONCE + SEAL_TAG) goto bad;
  raw_len -= SEAL_NONCE + SEAL_TAG;
  plain = (unsigned char *)lua_newuserdatauv(L, raw_len + 1, 0);
  if (!seal_gcm(0, key, raw, raw + SEAL_NONCE, (int)raw_len, plain, raw + SEAL_NONCE + raw_len)) {
    luaL_pushfail(L);
    lua_pushliteral(L, "it does not open with this key (a different key, or the value was changed)");
    return 2;
  }
  lua_pushlstring(L, (const char *)plain, raw_len);
  return 1;
bad:
  luaL_pushfail(L);
  lua_pushliteral(L, "not a sealed value");
  return 2;
}

static const luaL_Reg seal_funcs[] = {
  {"key", seal_key}, {"seal", seal_seal}, {"open", seal_open}, {NULL, NULL}
};

int luaopen_orch_core_seal (lua_State *L) {
  luaL_newlib(L, seal_funcs);
  return 1;
}
