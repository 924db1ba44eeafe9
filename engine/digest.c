/*
** digest.c: orch.core.digest, SHA-256 of files and strings, HMAC-SHA256
** (webhooks), HMAC-SHA1 (hashed known_hosts names) and
** a timing-safe compare, from libcrypto. A module opened on first use
** (main.c): loading libcrypto was a third of every orch start, and most
** commands hash nothing. fs.sha256 and fs.sha256_data forward here.
*/
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "orch.h"

/*
** SHA-256, fetched once: with OpenSSL 3 every EVP_sha256() init fetches
** the algorithm again (a property query under a lock), which was most of
** the cost of hashing a small file, and a plan hashes every file it has.
*/
static const EVP_MD *digest_sha256_md (void) {
  static const EVP_MD *md;
  if (md == NULL) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    md = EVP_MD_fetch(NULL, "SHA256", NULL);
#endif
    if (md == NULL) md = EVP_sha256();
  }
  return md;
}

static void digest_push_hex (lua_State *L, const unsigned char *md, unsigned int n) {
  static const char digits[] = "0123456789abcdef";
  char hex[EVP_MAX_MD_SIZE * 2];
  unsigned int i;
  for (i = 0; i < n; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * n);
}

/* digest.sha256(path) -> hex; streams in 64 KiB reads: a large artifact
** costs no memory. */
static int digest_sha256 (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int fd, err = 0, ok;
  EVP_MD_CTX *ctx;
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return orch_fail(L, path, errno);
  ctx = EVP_MD_CTX_new();
  ok = ctx && EVP_DigestInit_ex(ctx, digest_sha256_md(), NULL);
  while (ok && !err) {
    unsigned char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    else if (n == 0) break;
    else ok = EVP_DigestUpdate(ctx, buf, (size_t)n);
  }
  ok = ok && !err && EVP_DigestFinal_ex(ctx, md, &mdlen);
  EVP_MD_CTX_free(ctx);
  close(fd);
  if (err) return orch_fail(L, path, err);
  if (!ok) return luaL_error(L, "%s: sha256 failed in libcrypto", path);
  digest_push_hex(L, md, mdlen);
  return 1;
}

/* digest.sha256_data(s) -> hex */
static int digest_sha256_data (lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, digest_sha256_md(), NULL))
    return luaL_error(L, "sha256 failed in libcrypto");
  digest_push_hex(L, md, mdlen);
  return 1;
}

/* [key, data] -> [.., hex] of HMAC with md */
static int digest_hmac (lua_State *L, const EVP_MD *md, const char *name) {
  size_t klen, dlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *data = luaL_checklstring(L, 2, &dlen);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  luaL_argcheck(L, klen <= 0x7fffffff, 1, "key too long");
  if (HMAC(md, key, (int)klen, (const unsigned char *)data, dlen, mac, &n) == NULL)
    return luaL_error(L, "%s failed in libcrypto", name);
  digest_push_hex(L, mac, n);
  return 1;
}

/* digest.hmac_sha256(key, data) -> hex, as in X-Hub-Signature-256 */
static int digest_hmac_sha256 (lua_State *L) {
  return digest_hmac(L, digest_sha256_md(), "hmac_sha256");
}

/* digest.hmac_sha1(key, data) -> hex, as OpenSSH hashes known_hosts names */
static int digest_hmac_sha1 (lua_State *L) {
  return digest_hmac(L, EVP_sha1(), "hmac_sha1");
}

/* digest.equal(a, b): a timing-safe compare; only the lengths may leak. */
static int digest_equal (lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

static const luaL_Reg digest_funcs[] = {
  {"sha256", digest_sha256}, {"sha256_data", digest_sha256_data},
  {"hmac_sha256", digest_hmac_sha256}, {"hmac_sha1", digest_hmac_sha1},
  {"equal", digest_equal}, {NULL, NULL}
};

int luaopen_orch_core_digest (lua_State *L) {
  luaL_newlib(L, digest_funcs);
  return 1;
}
