# env_test.sh - environments and secret API keys through tetherctl env and the session-manager:
# key formats, duplicate refusal, idempotent and race-safe bootstrap, whois over current and
# grace-window keys, rotation, preview branches, a kill -9 of the session-manager during a burst
# of creates (nothing lost, nothing doubled), and no key ever written to a log.
# The database is shared with other test files: every org/project slug here is unique to the run.
. "$(dirname "$0")/../lib/itest.sh"

PSQL=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
sql() { # sql QUERY [VAR=VALUE ...]: one value per line; values reach SQL as psql variables
  local q=$1
  shift
  local vars=()
  for v in "$@"; do vars+=(-v "$v"); done
  "$PSQL" -X -qtA -d "$TETHER_PG_URL" "${vars[@]}" <<<"$q"
}
matches() { [[ $1 =~ $2 ]]; }
fails_with() { # fails_with RC PATTERN CMD...: CMD exits RC and its stderr matches PATTERN
  local want=$1 pat=$2 err rc
  shift 2
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  [[ $rc == "$want" ]] && grep -Eq -- "$pat" <<<"$err" && return 0
  diag "exit $rc, stderr: $err"
  return 1
}
KEY_RE='^tr_(dev|stg|prod|preview)_[0-9A-Za-z]{20}$'

tree_start
U="t$$-$RANDOM"
ORG="org-$U"

# --- create: one key per type, of the contract's form
declare -A KEY
for t in dev stg prod preview; do
  KEY[$t]=$(ctl env create --org "$ORG" --project web --type $t)
  ok "create --type $t prints a key tr_${t}_<20 alnum> (${#KEY[$t]} chars)" \
    matches "${KEY[$t]}" "^tr_${t}_[0-9A-Za-z]{20}\$"
done
ok "the four keys differ" test "$(printf '%s\n' "${KEY[@]}" | sort -u | wc -l)" -eq 4
ok "a second dev environment in the project is refused with a clear error" \
  fails_with 1 "already has a DEVELOPMENT environment" \
  ctl env create --org "$ORG" --project web --type dev
ok "an unknown type is refused" fails_with 1 "type must be dev, stg, prod or preview" \
  ctl env create --org "$ORG" --project web --type qa
ok "a bad project slug is refused" fails_with 1 "must be 1-64 characters" \
  ctl env create --org "$ORG" --project "no spaces" --type dev
ok "missing options are a usage error (100)" fails_with 100 "usage" ctl env create --type dev

J=$(ctl env create --org "$ORG" --project api --type prod --json)
ok "create --json prints the environment with its key" matches "$(jq -r .api_key <<<"$J")" \
  '^tr_prod_[0-9A-Za-z]{20}$'
is "$(jq -r '[.type, .slug, .organization_slug, .project_slug, .parent_id] | join(" ")' <<<"$J")" \
  "PRODUCTION prod $ORG api " "the env object has type, slug, org, project and no parent"
is "$(jq -r '.signing_keys == [.api_key]' <<<"$J")" true "a new environment signs with its key only"
ok "the id is a cuid" matches "$(jq -r .id <<<"$J")" '^c[0-9a-z]{24}$'
is "$(sql "SELECT count(*) FROM runtime_environments
           WHERE api_key_hash <> encode(sha256(convert_to(api_key, 'UTF8')), 'hex')")" 0 \
  "every stored key has its sha256 in api_key_hash"
ok "projects get an external ref proj_<20 lowercase alnum>" matches \
  "$(sql "SELECT p.external_ref FROM projects p JOIN organizations o ON o.id = p.organization_id
          WHERE o.slug = :'o' AND p.slug = 'api'" o="$ORG")" '^proj_[0-9a-z]{20}$'

# --- bootstrap: idempotent, and race-safe
B1=$(ctl env bootstrap)
B2=$(ctl env bootstrap)
ok "bootstrap prints a development key" matches "$B1" '^tr_dev_[0-9A-Za-z]{20}$'
is "$B2" "$B1" "a second bootstrap returns the same key"
PIDS=()
for i in 1 2 3 4 5; do
  ctl env bootstrap >"$TREE_DIR/boot.$i" 2>&1 &
  PIDS+=($!)
done
wait "${PIDS[@]}" # not a bare wait: the tree is a background job too
is "$(cat "$TREE_DIR"/boot.* | sort -u)" "$B1" "5 concurrent bootstraps all print that same key"
is "$(sql "SELECT count(*) FROM runtime_environments e JOIN projects p ON p.id = e.project_id
           JOIN organizations o ON o.id = p.organization_id
           WHERE o.slug = 'default' AND p.slug = 'default'")" 1 "default/default has one environment"
out=$(TETHER_BOOTSTRAP_WAIT_S=5 compose/bootstrap.sh "$TETHER_TEST_BIN" "$TREE_URL" 2>&1 >/dev/null)
ok "compose/bootstrap.sh prints the key for newcomers" \
  grep -qF "Secret key (development environment): $B1" <<<"$out"
ok "... and a command to try it" grep -qF "Authorization: Bearer $B1\" $TREE_URL/api/v1/auth/jwt/claims" \
  <<<"$out"

# --- whois
W=$(ctl env whois "${KEY[stg]}" --json)
is "$(jq -r '[.type, .organization_slug, .project_slug] | join(" ")' <<<"$W")" "STAGING $ORG web" \
  "whois finds the environment of a current key"
is "$(jq -r .api_key <<<"$W")" "****" "whois --json masks the key"
out=$(ctl env whois "${KEY[dev]}")
ok "whois prints id, type, org and project" grep -q "^type  *DEVELOPMENT" <<<"$out"
ok "... and no key" bash -c "! grep -q tr_ <<<'$out'"
ok "whois - reads the key from stdin" bash -c "$TETHER_TEST_BIN/tetherctl env whois - <<<'${KEY[dev]}' | grep -q DEVELOPMENT"
ok "an unknown key is refused" fails_with 1 "invalid API key" \
  ctl env whois tr_dev_AAAAAAAAAAAAAAAAAAAA
ok "a key not starting with tr_ is refused" fails_with 1 "invalid API key" \
  ctl env whois pk_dev_AAAAAAAAAAAAAAAAAAAA
ok "a key with odd bytes is refused without trouble" fails_with 1 "invalid API key" \
  ctl env whois "tr_dev_'; DROP TABLE x; --"

# --- rotation and the grace window
J=$(ctl env create --org "$ORG" --project rot --type dev --json)
ID=$(jq -r .id <<<"$J")
K0=$(jq -r .api_key <<<"$J")
K1=$(ctl env rotate-key "$ID")
ok "rotate-key prints a new key" bash -c "[[ '$K1' =~ ^tr_dev_[0-9A-Za-z]{20}\$ && '$K1' != '$K0' ]]"
is "$(ctl env whois "$K1" --json | jq -r .id)" "$ID" "the new key resolves to the environment"
is "$(ctl env whois "$K0" --json | jq -r .id)" "$ID" "the old key still works within its grace (24 h)"
K2=$(ctl env rotate-key "$ID" --grace 0)
ok "rotate-key --grace 0 prints another key" matches "$K2" '^tr_dev_[0-9A-Za-z]{20}$'
ok "the key rotated out with grace 0 is refused at once" fails_with 1 "invalid API key" \
  ctl env whois "$K1"
is "$(ctl env whois "$K0" --json | jq -r .id)" "$ID" "the first key is still in its own grace window"
K3=$(ctl env rotate-key "$ID" --grace 1s)
is "$(ctl env whois "$K2" --json | jq -r .id)" "$ID" "a key rotated out with grace 1s works at first"
sleep 1.2
ok "... and is refused once the second has passed" fails_with 1 "invalid API key" ctl env whois "$K2"
is "$(ctl env whois "$K3" --json | jq -r .id)" "$ID" "the current key works"
is "$(sql "SELECT count(*) FROM revoked_api_keys WHERE runtime_environment_id = :'id'" id="$ID")" 3 \
  "each rotation kept the old key in revoked_api_keys"
ok "rotating an unknown environment is NOTFOUND" fails_with 1 "no such environment" \
  ctl env rotate-key cxxxxxxxxxxxxxxxxxxxxxxxx

# --- list
ctl env list >"$TREE_DIR/list.out"
rc=$?
is "$rc" 0 "env list works"
ok "the list shows the environments" grep -q "$ID .*DEVELOPMENT .*dev .*$ORG/rot" "$TREE_DIR/list.out"
ok "the list has a header" grep -q "^ID .*TYPE .*ORG/PROJECT" "$TREE_DIR/list.out"
ok "the list shows no key" bash -c "! grep -q tr_ $TREE_DIR/list.out"
ok "list --json shows no key either" bash -c "! $TETHER_TEST_BIN/tetherctl env list --json | grep -q tr_"
ok "list --json lacks api_key and signing_keys" bash -c \
  "$TETHER_TEST_BIN/tetherctl env list --json | jq -e '[.envs[] | has(\"api_key\") or has(\"signing_keys\")] | any | not' >/dev/null"

# --- preview branches
J=$(ctl env create --org "$ORG" --project pv --type preview --json)
PID=$(jq -r .id <<<"$J")
PK=$(jq -r .api_key <<<"$J")
BK=$(ctl env create --type preview --parent "$PID" --branch feature/login-1.2)
ok "a branch is created with its own preview key" matches "$BK" '^tr_preview_[0-9A-Za-z]{20}$'
ok "a preview key without x-trigger-branch is refused" \
  fails_with 1 "preview environments need x-trigger-branch" ctl env whois "$PK"
W=$(ctl env whois "$PK" --branch feature/login-1.2 --json)
is "$(jq -r '[.type, .branch_name, .parent_id, .slug, .project_slug] | join(" ")' <<<"$W")" \
  "PREVIEW feature/login-1.2 $PID feature/login-1.2 pv" "with the branch it resolves to the branch env"
ok "the branch env is not the parent" test "$(jq -r .id <<<"$W")" != "$PID"
ok "an unknown branch is refused" fails_with 1 "no such preview branch" \
  ctl env whois "$PK" --branch nope
is "$(ctl env whois "$BK" --json | jq -r .branch_name)" feature/login-1.2 \
  "the branch's own key resolves to the branch"
ok "a second branch of the same name is refused" fails_with 1 "already has a branch" \
  ctl env create --type preview --parent "$PID" --branch feature/login-1.2
ok "a branch name with a space is refused" fails_with 1 "branch must be" \
  ctl env create --type preview --parent "$PID" --branch "bad name"
ok "a branch of a non-preview environment is refused" fails_with 1 "must name a preview" \
  ctl env create --type preview --parent "$ID" --branch x
ok "a branch of a branch is refused" fails_with 1 "must name a preview" \
  ctl env create --type preview --parent "$(jq -r .id <<<"$W")" --branch x
ok "a branch whose --project contradicts the parent is refused" fails_with 1 "belongs to $ORG/pv" \
  ctl env create --org "$ORG" --project web --type preview --parent "$PID" --branch y
ok "a branch of an unknown parent is NOTFOUND" fails_with 1 "no such parent" \
  ctl env create --type preview --parent cxxxxxxxxxxxxxxxxxxxxxxxx --branch y
# signing keys of a branch are the parent's: rotate the parent, the branch follows
PK2=$(ctl env rotate-key "$PID")
is "$(ctl env whois "$PK2" --branch feature/login-1.2 --json | jq -r .branch_name)" feature/login-1.2 \
  "the parent's new key reaches the branch"
is "$(sql "SELECT count(*) FROM revoked_api_keys WHERE runtime_environment_id = :'id'" id="$PID")" 1 \
  "the parent's old key is kept for the grace window (the branch's signing keys)"

# --- kill -9 of the session-manager during a burst of creates
restarts0=$(child_field session-manager restarts)
BURST=$TREE_DIR/burst
mkdir -p "$BURST"
create_until_done() { # one project: retry a failed create; a refusal as duplicate is final
  local i=$1 try rc
  sleep "$(printf '0.%03d' $((i * 30)))" # spread over 600 ms: the kill lands mid-burst
  for try in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    "$TETHER_TEST_BIN/tetherctl" env create --org "$ORG" --project "burst-$i" --type dev \
      >"$BURST/$i.key" 2>"$BURST/$i.err" || rc=$?
    echo "$rc" >>"$BURST/$i.rc"
    ((rc == 0)) && return
    grep -q "already has" "$BURST/$i.err" && return
    sleep 0.3
  done
}
PIDS=()
for i in $(seq 1 20); do
  create_until_done "$i" &
  PIDS+=($!)
done
sleep 0.25
ctl_quiet kill session-manager KILL
wait "${PIDS[@]}"
diag "burst: $(cat "$BURST"/*.rc | grep -cv '^0$') failed attempts retried, exits: $(cat "$BURST"/*.rc | sort | uniq -c | tr -s ' \n' ' ')"
ok "the session-manager was killed and restarted" \
  wait_for 10000 bash -c "[[ \$($TETHER_TEST_BIN/tetherctl status --json | jq -r '.children[] | select(.name==\"session-manager\") | .restarts') -gt $restarts0 ]]"
printed=0 good=0 dupfree=0 refused=0
for i in $(seq 1 20); do
  k=$(cat "$BURST/$i.key")
  n=$(sql "SELECT count(*) FROM runtime_environments e JOIN projects p ON p.id = e.project_id
           JOIN organizations o ON o.id = p.organization_id
           WHERE o.slug = :'o' AND p.slug = :'p'" o="$ORG" p="burst-$i")
  ((n <= 1)) && dupfree=$((dupfree + 1))
  if [[ -n $k ]]; then
    printed=$((printed + 1))
    got=$(ctl env whois "$k" --json 2>/dev/null | jq -r .project_slug)
    [[ $got == "burst-$i" && $n == 1 ]] && good=$((good + 1))
  elif grep -q "already has" "$BURST/$i.err"; then
    refused=$((refused + 1)) # the first attempt committed before the kill; its reply was lost
  fi
done
diag "burst: $printed keys printed, $refused refused as already created after a lost reply"
ok "most creates of the burst printed a key ($printed of 20)" test "$printed" -ge 10
is "$good" "$printed" "every printed key resolves to its own project's environment"
is "$dupfree" 20 "no project got two environments"
is "$((printed + refused))" 20 "every create ended with a key or a clear duplicate refusal"
is "$(ctl env whois "${KEY[prod]}" --json | jq -r .type)" PRODUCTION "keys made before the kill still work"

# --- no key in any log
ok "the session-manager's lines are in the tree log" grep -q '"event":"env.created"' "$TREE_LOG"
ok "no log line of the tree contains a secret key" \
  bash -c "! grep -Eq 'tr_(dev|stg|prod|preview)_[0-9A-Za-z]{20}' '$TREE_LOG'"
tree_stop

# --- the store down: a clear temporary failure, not a hang or a crash
tree_start_nowait TETHER_PG_URL=postgresql://127.0.0.1:1/nothing
ok "with PostgreSQL unreachable, env bootstrap exits 111 saying the store is unavailable" \
  wait_for 10000 fails_with 111 "store is unavailable" ctl env bootstrap
tree_stop
ok "no key in that tree's log either" \
  bash -c "! grep -Eq 'tr_(dev|stg|prod|preview)_[0-9A-Za-z]{20}' '$TREE_LOG'"

done_testing
