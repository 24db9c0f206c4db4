# docs_test.sh - the generated pages match the binaries: docs/config.md and docs/protocol.md are
# regenerated from TETHER_TEST_BIN into a scratch directory and must equal the committed ones;
# generating twice gives the same bytes; every program has its page and the links between the
# pages resolve. Needs no store and starts no process tree.
. "$(dirname "$0")/../lib/itest.sh"

ROOT=$(cd -- "$(dirname -- "$0")/../.." && pwd -P)
DOCS=$ROOT/docs
OUT=$(mktemp -d "${TETHER_TEST_TMP:-/tmp}/docs.XXXXXX")

ok "gen-docs.sh regenerates the pages from the binaries" \
  bash -c "'$ROOT/tests/lib/gen-docs.sh' '$TETHER_TEST_BIN' '$OUT' 2>'$OUT/gen.err'"

for f in config.md protocol.md; do
  if diff -u "$DOCS/$f" "$OUT/$f" >"$OUT/$f.diff" 2>&1; then
    ok "docs/$f matches the binaries" true
  else
    ok "docs/$f is stale: run make docs" false
    head -n 20 "$OUT/$f.diff" | while IFS= read -r line; do diag "$line"; done
  fi
done

mkdir -p "$OUT/again"
"$ROOT/tests/lib/gen-docs.sh" "$TETHER_TEST_BIN" "$OUT/again" 2>/dev/null
ok "a second run gives the same bytes" \
  bash -c "cmp -s '$OUT/config.md' '$OUT/again/config.md' && cmp -s '$OUT/protocol.md' '$OUT/again/protocol.md'"

for p in supervisor gateway session-manager run-manager stream-broker waitpoint-registry \
  clickhouse-replicator tetherctl; do
  ok "docs/$p.md exists and is listed in docs/README.md" \
    bash -c "[[ -s '$DOCS/$p.md' ]] && grep -q '($p.md)' '$DOCS/README.md'"
done

# Every relative link [text](page.md#anchor) between the pages names a page that exists and, with
# an anchor, a heading of that page (GitHub's slugs: lower case, punctuation dropped, - for spaces).
slugs() { sed -n 's/^#\{1,6\} //p' "$1" | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9 _-]//g; s/ /-/g'; }
broken=""
for page in "$DOCS"/*.md; do
  while IFS= read -r target; do
    file=${target%%#*} anchor=""
    [[ $target == *#* ]] && anchor=${target#*#}
    if [[ ! -e $DOCS/$file ]] || { [[ -n $anchor ]] && ! slugs "$DOCS/$file" | grep -qx -- "$anchor"; }; then
      broken="$broken ${page##*/}->$target"
    fi
  done < <(grep -o '](\([a-z0-9-]*\.md\)\(#[a-z0-9_-]*\)\?)' "$page" | sed 's/^](//; s/)$//')
done
is "$broken" "" "links between the pages resolve, anchors included"

rm -rf "$OUT"
done_testing
