/*
 * ea.h - what every file of the echo agent shares: error codes and limits.
 *
 * Functions return an ea_err_t (EA_OK or the reason) and pass results back
 * through out-parameters; only main() turns a code into an exit status.
 */
#ifndef ECHO_AGENT_EA_H
#define ECHO_AGENT_EA_H

typedef enum {
    EA_OK = 0,
    EA_ERR_NOMEM,
    EA_ERR_NET,     /* no usable answer: refused, dropped, timed out, 5xx, 429 (worth retrying) */
    EA_ERR_HTTP,    /* a status that asking again will not change (4xx) */
    EA_ERR_PROTO,   /* an answer that does not follow the contract */
    EA_ERR_TOOBIG,  /* an answer or an SSE event over its size cap */
    EA_ERR_ABORTED, /* a stop predicate fired (shutdown, run lost) */
    EA_ERR_STOPPED, /* a streaming consumer ended the transfer itself */
    EA_ERR_INVAL,   /* bad configuration or argument */
} ea_err_t;

const char *ea_err_str(ea_err_t rc);

/* One SSE event (a batch of .in records). The stream-broker reads at most 4 MiB of records at a
 * time and JSON escaping can grow that a few times; more than this fails the run. */
#define EA_SSE_EVENT_MAX (32u << 20)
#define EA_ANSWER_MAX (16u << 20)     /* any JSON answer (dequeue, /records, S2 reads) */
#define EA_ERRBODY_MAX (4u << 10)     /* what is kept of an error answer, for the log */
#define EA_TOKEN_MAX (16u << 10)      /* run tokens, S2 tokens */
#define EA_ECHO_TEXT_MAX (256u << 10) /* echoed text is cut here so a reply stays one record */
#define EA_MAX_RUNS_CAP 50            /* the dequeue route's own maxRuns limit */

#endif
