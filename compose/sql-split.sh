# sql-split.sh - sourced by compose/services.sh and deploy/schema.sh: ClickHouse's HTTP interface
# takes one statement per request, so a schema file is cut into statements first.
#
# sql_split FILE: sets the array SQL_STMTS to FILE's statements, in order. A statement ends with
# a line ending in ";" (the ";" is dropped); whole-line "--" comments are dropped; what is left
# after the last ";" is one more statement, and blank ones are left out.
sql_split() {
  local line buf=""
  SQL_STMTS=()
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*-- ]] && continue
    buf+=$line$'\n'
    if [[ $line =~ \;[[:space:]]*$ ]]; then
      [[ ${buf%;*} =~ [^[:space:]] ]] && SQL_STMTS+=("${buf%;*}")
      buf=""
    fi
  done <"$1"
  [[ $buf =~ [^[:space:]] ]] && SQL_STMTS+=("$buf")
  return 0
}
