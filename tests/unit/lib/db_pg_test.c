/*
 * db_pg_test.c - the SQLSTATE -> err_t translation: transient store trouble is retryable
 * (ERR_UNAVAIL, ERR_TIMEOUT), a refused value is ERR_INVAL, and nothing transient is ever
 * reported as the client's fault.
 */
#include "db_pg.h"
#include "t.h"

T_TEST(sqlstate_classes)
{
    T_ERR(db_pg_err_of_sqlstate("57014"), ERR_TIMEOUT);  /* statement_timeout */
    T_ERR(db_pg_err_of_sqlstate("23505"), ERR_EXISTS);   /* unique_violation */
    T_ERR(db_pg_err_of_sqlstate("40001"), ERR_UNAVAIL);  /* serialization_failure */
    T_ERR(db_pg_err_of_sqlstate("40P01"), ERR_UNAVAIL);  /* deadlock_detected */
    T_ERR(db_pg_err_of_sqlstate("55P03"), ERR_UNAVAIL);  /* lock_not_available */
    T_ERR(db_pg_err_of_sqlstate("08006"), ERR_UNAVAIL);  /* connection_failure */
    T_ERR(db_pg_err_of_sqlstate("08P01"), ERR_UNAVAIL);  /* protocol_violation */
    T_ERR(db_pg_err_of_sqlstate("53300"), ERR_UNAVAIL);  /* too_many_connections */
    T_ERR(db_pg_err_of_sqlstate("57P01"), ERR_UNAVAIL);  /* admin_shutdown */
    T_ERR(db_pg_err_of_sqlstate("57P03"), ERR_UNAVAIL);  /* cannot_connect_now */
    T_ERR(db_pg_err_of_sqlstate("22P02"), ERR_INVAL);    /* invalid_text_representation */
    T_ERR(db_pg_err_of_sqlstate("22001"), ERR_INVAL);    /* string_data_right_truncation */
}

T_TEST(sqlstate_other)
{
    T_ERR(db_pg_err_of_sqlstate("42P01"), ERR_INTERNAL); /* undefined_table: our bug */
    T_ERR(db_pg_err_of_sqlstate("23503"), ERR_INTERNAL); /* foreign_key_violation */
    T_ERR(db_pg_err_of_sqlstate("XX000"), ERR_INTERNAL);
    T_ERR(db_pg_err_of_sqlstate(NULL), ERR_INTERNAL);
    T_ERR(db_pg_err_of_sqlstate(""), ERR_INTERNAL);
    T_ERR(db_pg_err_of_sqlstate("5701"), ERR_INTERNAL);
    T_ERR(db_pg_err_of_sqlstate("570144"), ERR_INTERNAL);
}

int main(void)
{
    T_RUN(sqlstate_classes);
    T_RUN(sqlstate_other);
    return T_DONE();
}
