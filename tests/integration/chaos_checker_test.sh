# chaos_checker_test.sh - the chaos suite's checker can fail: hand-made histories holding a lost
# write, a duplicate, a reorder, two live runs and each other anomaly kind, and a clean one
# (tests/chaos/check_test.mjs prints the TAP).
exec node "$(dirname "$0")/../chaos/check_test.mjs"
