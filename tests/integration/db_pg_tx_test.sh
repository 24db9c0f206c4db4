# db_pg_tx_test.sh - the ends of a PostgreSQL transaction that carry a statement, and the once
# routes' claim and save on them (actors/lib/db_pg.h, actor_once.h), against the real
# PostgreSQL: tests/drivers/db_pg_tx_driver.c prints the TAP.
set -uo pipefail
: "${TETHER_TEST_BIN:?run through tests/run.sh}"
exec "$(dirname "$TETHER_TEST_BIN")/drivers/db_pg_tx_driver"
