-- state/migrations.lua: the state store's schema, one SQL script per
-- version (PRAGMA user_version), applied in order by orch.state.open. Append
-- only: a released migration never changes, a fix is a new one. A function
-- entry gets the db and returns true, or nil, err, code.
return {
  -- 1: runs and their event stream
  [[
    CREATE TABLE runs (
      id       INTEGER PRIMARY KEY,
      playbook TEXT NOT NULL,
      command  TEXT,
      started  REAL NOT NULL,
      finished REAL,
      status   TEXT NOT NULL CHECK (status IN
                 ('running', 'ok', 'failed', 'interrupted', 'aborted')),
      who      TEXT NOT NULL,
      hostname TEXT,
      pid      INTEGER
    );
    CREATE TABLE events (
      id     INTEGER PRIMARY KEY,
      run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
      seq    INTEGER NOT NULL,
      time   REAL NOT NULL,
      host   TEXT,
      kind   TEXT NOT NULL,
      name   TEXT,
      status TEXT,
      data   TEXT
    );
    CREATE INDEX events_run_seq ON events (run_id, seq);
  ]],
  -- 2: versions of managed files (content deduplicated by hash) and of
  -- named configurations
  [[
    CREATE TABLE blobs (
      sha256  TEXT PRIMARY KEY,
      content BLOB NOT NULL
    );
    CREATE TABLE file_versions (
      id       INTEGER PRIMARY KEY,
      host     TEXT NOT NULL,
      path     TEXT NOT NULL,
      version  INTEGER NOT NULL,
      state    TEXT NOT NULL CHECK (state IN ('file', 'absent')),
      sha256   TEXT,
      stored   INTEGER NOT NULL DEFAULT 1,
      size     INTEGER,
      mode     INTEGER,
      uid      INTEGER,
      gid      INTEGER,
      owner    TEXT,
      grp      TEXT,
      run_id   INTEGER REFERENCES runs(id),
      time     REAL NOT NULL,
      action   TEXT NOT NULL CHECK (action IN ('original', 'apply', 'rollback')),
      resource TEXT,
      UNIQUE (host, path, version)
    );
    CREATE INDEX file_versions_run ON file_versions (run_id);
    CREATE TABLE configs (
      id      INTEGER PRIMARY KEY,
      name    TEXT NOT NULL,
      version INTEGER NOT NULL,
      run_id  INTEGER REFERENCES runs(id),
      time    REAL NOT NULL,
      action  TEXT NOT NULL CHECK (action IN ('apply', 'rollback')),
      UNIQUE (name, version)
    );
    CREATE TABLE config_files (
      config_id INTEGER NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
      host      TEXT NOT NULL,
      path      TEXT NOT NULL,
      version   INTEGER NOT NULL,
      PRIMARY KEY (config_id, host, path)
    );
  ]],
  -- 3: pipeline runs and their stages
  [[
    CREATE TABLE pipeline_runs (
      id        INTEGER PRIMARY KEY,
      run_id    INTEGER NOT NULL REFERENCES runs(id),
      pipeline  TEXT NOT NULL,
      trigger   TEXT NOT NULL,
      started   REAL NOT NULL,
      finished  REAL,
      status    TEXT NOT NULL,
      workspace TEXT
    );
    CREATE INDEX pipeline_runs_name ON pipeline_runs (pipeline, id);
    CREATE TABLE stage_runs (
      pipeline_run INTEGER NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,
      stage     TEXT NOT NULL,
      status    TEXT NOT NULL,
      attempts  INTEGER NOT NULL DEFAULT 0,
      started   REAL,
      finished  REAL,
      reason    TEXT,
      log       TEXT,
      PRIMARY KEY (pipeline_run, stage)
    );
  ]],
  -- 4: artifacts, what triggered a run (a commit, a delivery), pruned
  -- workspaces, and what each trigger saw last (a branch's head)
  [[
    ALTER TABLE pipeline_runs ADD COLUMN detail TEXT;
    ALTER TABLE pipeline_runs ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pipeline_artifacts (
      pipeline_run INTEGER NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,
      stage     TEXT NOT NULL,
      path      TEXT NOT NULL,
      files     INTEGER NOT NULL,
      bytes     INTEGER NOT NULL,
      sha256    TEXT NOT NULL,
      PRIMARY KEY (pipeline_run, stage)
    );
    CREATE TABLE pipeline_triggers (
      pipeline  TEXT NOT NULL,
      trigger   TEXT NOT NULL,
      seen      TEXT NOT NULL,
      updated   REAL NOT NULL,
      PRIMARY KEY (pipeline, trigger)
    );
  ]],
  -- 5: infrastructure: workspaces (lineage, serial), resources, outputs, locks
  [[
  CREATE TABLE infra_workspaces (
    name     TEXT PRIMARY KEY,
    lineage  TEXT NOT NULL,
    serial   INTEGER NOT NULL
  );
  CREATE TABLE infra_resources (
    workspace TEXT NOT NULL,
    address   TEXT NOT NULL,
    type      TEXT NOT NULL,
    attrs     TEXT NOT NULL,
    deps      TEXT NOT NULL,
    sensitive TEXT,
    updated   REAL NOT NULL,
    PRIMARY KEY (workspace, address)
  );
  CREATE TABLE infra_outputs (
    workspace TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    sensitive INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, name)
  );
  CREATE TABLE infra_locks (
    workspace TEXT PRIMARY KEY,
    id        TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    hostname  TEXT NOT NULL,
    who       TEXT,
    operation TEXT NOT NULL,
    since     REAL NOT NULL
  );
  ]],
  -- 6: webhook deliveries accepted, by id and by the body's digest: a
  -- signed body is run once, whatever its unsigned headers say
  [[
  CREATE TABLE webhook_deliveries (
    pipeline  TEXT NOT NULL,
    digest    TEXT NOT NULL,
    delivery  TEXT NOT NULL,
    received  REAL NOT NULL,
    PRIMARY KEY (pipeline, digest)
  );
  CREATE INDEX webhook_deliveries_id ON webhook_deliveries (pipeline, delivery);
  CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received);
  ]],
  -- 7: a file version may be "drift": what was there, changed outside orch,
  -- kept before orch wrote over it (SQLite changes a CHECK by rebuilding)
  [[
  CREATE TABLE file_versions_new (
    id       INTEGER PRIMARY KEY,
    host     TEXT NOT NULL,
    path     TEXT NOT NULL,
    version  INTEGER NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('file', 'absent')),
    sha256   TEXT,
    stored   INTEGER NOT NULL DEFAULT 1,
    size     INTEGER,
    mode     INTEGER,
    uid      INTEGER,
    gid      INTEGER,
    owner    TEXT,
    grp      TEXT,
    run_id   INTEGER REFERENCES runs(id),
    time     REAL NOT NULL,
    action   TEXT NOT NULL CHECK (action IN ('original', 'apply', 'rollback', 'drift')),
    resource TEXT,
    UNIQUE (host, path, version)
  );
  INSERT INTO file_versions_new SELECT * FROM file_versions;
  DROP TABLE file_versions;
  ALTER TABLE file_versions_new RENAME TO file_versions;
  CREATE INDEX file_versions_run ON file_versions (run_id);
  ]],
  -- 8: handlers notified by a run that ended before they ran: the next
  -- run of the same playbook runs them
  [[
  CREATE TABLE pending_handlers (
    playbook TEXT NOT NULL,
    host     TEXT NOT NULL,
    name     TEXT NOT NULL,
    notified_by TEXT,
    run_id   INTEGER,
    time     REAL NOT NULL,
    PRIMARY KEY (playbook, host, name)
  );
  ]],
  -- 9: what a run read on each SSH host (path, and how: lstat, stat,
  -- content, sha256, link), so the next run fetches it in one batch
  [[
  CREATE TABLE host_reads (
    host  TEXT NOT NULL,
    path  TEXT NOT NULL,
    kinds TEXT NOT NULL,
    PRIMARY KEY (host, path)
  );
  ]],
}
