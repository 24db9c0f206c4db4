-- 0002_environments: organizations, projects, runtime environments and their secret API keys.
-- A key is looked up by api_key_hash, the hex SHA-256 of the key (computed by PostgreSQL:
-- encode(sha256(convert_to(key, 'UTF8')), 'hex')); the key itself is kept because it is also the
-- HMAC secret JWTs of the environment are signed with (api contract §3.2). A rotated-out key
-- moves to revoked_api_keys and keeps working until expires_at (the grace window).
-- Applied once by compose/migrate.sh inside its transaction: no BEGIN/COMMIT here.

CREATE TABLE organizations (
    id         text PRIMARY KEY,
    slug       text NOT NULL UNIQUE,
    title      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id              text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id),
    slug            text NOT NULL,
    name            text NOT NULL,
    external_ref    text NOT NULL UNIQUE, -- "proj_" + 20 of [a-z0-9]
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    UNIQUE (organization_id, slug)
);

CREATE TABLE runtime_environments (
    id                    text PRIMARY KEY, -- cuid
    organization_id       text NOT NULL REFERENCES organizations (id),
    project_id            text NOT NULL REFERENCES projects (id),
    type                  text NOT NULL
        CHECK (type IN ('DEVELOPMENT', 'STAGING', 'PRODUCTION', 'PREVIEW')),
    slug                  text NOT NULL, -- dev, stg, prod, preview, or the branch name
    parent_environment_id text REFERENCES runtime_environments (id), -- preview branches only
    branch_name           text,
    api_key               text NOT NULL UNIQUE,
    api_key_hash          text NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    archived_at           timestamptz,
    -- a branch has both a parent and a name, and is a preview environment
    CHECK ((parent_environment_id IS NULL) = (branch_name IS NULL)),
    CHECK (parent_environment_id IS NULL OR type = 'PREVIEW'),
    -- one branch of a name per parent (roots have NULLs here, which never collide)
    UNIQUE (parent_environment_id, branch_name)
);

-- At most one environment of each type per project, branches aside.
CREATE UNIQUE INDEX runtime_environments_project_type_root
    ON runtime_environments (project_id, type)
    WHERE parent_environment_id IS NULL;

CREATE TABLE revoked_api_keys (
    id                     text PRIMARY KEY,
    runtime_environment_id text NOT NULL REFERENCES runtime_environments (id),
    api_key                text NOT NULL, -- still a signing key until expires_at
    api_key_hash           text NOT NULL,
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX revoked_api_keys_api_key_hash ON revoked_api_keys (api_key_hash);
-- the signing keys of an environment: its revoked keys still within their grace window
CREATE INDEX revoked_api_keys_env_expires ON revoked_api_keys (runtime_environment_id, expires_at);
