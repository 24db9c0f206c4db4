# db_pg_async_test.sh - the non-blocking PostgreSQL pool (actors/lib/db_pg_async.h) against the
# real PostgreSQL: tests/drivers/db_pg_async_driver.c prints the TAP.
set -uo pipefail
: "${TETHER_TEST_BIN:?run through tests/run.sh}"
exec "$(dirname "$TETHER_TEST_BIN")/drivers/db_pg_async_driver"
