/*
 * devstack's one addition to librdkafka's mock broker (the embedded Kafka): it coalesces the
 * message sets every consumer group has already committed into chunks of up to
 * MOCK_LOG_CHUNK_BYTES, once a second, on the mock's own thread.
 *
 * Why: the mock keeps each produced batch as one message set in a list, finds the set holding a
 * fetch offset by walking that list from the oldest (rdkafka_mock.c, "FIXME: Maintain an
 * index"), and answers a fetch with one set per partition. Herald's producers send one record
 * per batch, so every fetch walked every record the partition still held (up to 100,000), and
 * the walk grew with everything ever produced: the embedded broker got slower the longer it ran
 * and stayed slow after an overload.
 *
 * Contract: no record is added, dropped, reordered or renumbered. A chunk is the byte-for-byte
 * concatenation of consecutive record batches, which a Kafka fetch answer may hold; a consumer
 * skips the records below its fetch offset, as it does with any real broker. Only sets below
 * the lowest offset committed on that partition are touched, so consumers at the head of the
 * log keep getting the batches exactly as produced. The log's retention limits count chunks.
 *
 * Second, the prompt broker: the mock holds a fetch that finds nothing for the consumer's whole
 * fetch.wait.max.ms, even when a record arrives meanwhile (a real broker answers at once). When
 * the devstack binary is linked with `--wrap=rd_kafka_mock_partition_log_append` (build.rs), every
 * append to a partition led by PROMPT_BROKER_ID ends the waits of the fetches that broker holds
 * and that asked to wait PROMPT_MIN_WAIT_US or more (PROMPT_ANSWER_AFTER_US after each began; the
 * answer is empty, as a real broker's would be had its wait ended), so their consumers ask again
 * and get the records. devstack puts only the topics of its no-window mappings on that broker,
 * and only those mappings ask to wait that long: a windowed mapping of the same topic is not
 * woken.
 *
 * Compiled against the private headers of the librdkafka that rdkafka-sys builds (build.rs), so
 * the struct layouts are that version's.
 */
#include "rdkafka_int.h"
#include "rdkafka_mock_int.h"

#define MOCK_LOG_CHUNK_BYTES (64 * 1024)
#define MOCK_LOG_INTERVAL_US (1000 * 1000)

/* The lowest offset committed on mpart by any group, or -1 if none has committed. */
static int64_t lowest_committed(const rd_kafka_mock_partition_t *mpart) {
        const rd_kafka_mock_committed_offset_t *coff;
        int64_t lowest = -1;
        TAILQ_FOREACH(coff, &mpart->committed_offsets, link) {
                if (coff->offset >= 0 && (lowest == -1 || coff->offset < lowest))
                        lowest = coff->offset;
        }
        return lowest;
}

/* Replaces the run of `cnt` sets starting at `first` with one set holding their bytes. */
static rd_kafka_mock_msgset_t *merge_run(rd_kafka_mock_partition_t *mpart,
                                         rd_kafka_mock_msgset_t *first,
                                         size_t cnt,
                                         size_t len) {
        rd_kafka_mock_msgset_t *merged, *mset, *next;
        char *out;
        size_t i;

        merged = rd_malloc(sizeof(*merged) + len);
        merged->first_offset = first->first_offset;
        merged->leader_epoch = first->leader_epoch;
        merged->bytes.len    = (int32_t)len;
        merged->bytes.data   = (void *)(merged + 1);
        out                  = (char *)(merged + 1);
        mset                 = first;
        for (i = 0; i < cnt; i++) {
                next = TAILQ_NEXT(mset, link);
                memcpy(out, mset->bytes.data, (size_t)mset->bytes.len);
                out += mset->bytes.len;
                merged->last_offset = mset->last_offset;
                if (i == 0)
                        TAILQ_INSERT_BEFORE(mset, merged, link);
                TAILQ_REMOVE(&mpart->msgsets, mset, link);
                rd_free(mset);
                mset = next;
        }
        mpart->cnt -= cnt - 1;
        return merged;
}

static void coalesce_partition(rd_kafka_mock_partition_t *mpart) {
        rd_kafka_mock_msgset_t *mset, *run, *next;
        int64_t committed = lowest_committed(mpart);
        size_t cnt, len;

        if (committed < 0)
                return;
        mset = TAILQ_FIRST(&mpart->msgsets);
        while (mset && mset->last_offset < committed) {
                run = mset;
                cnt = 0;
                len = 0;
                while (mset && mset->last_offset < committed &&
                       mset->leader_epoch == run->leader_epoch &&
                       len + (size_t)mset->bytes.len <= MOCK_LOG_CHUNK_BYTES) {
                        len += (size_t)mset->bytes.len;
                        cnt++;
                        mset = TAILQ_NEXT(mset, link);
                }
                if (cnt == 0) {
                        /* One set alone is larger than a chunk: leave it as it is. */
                        mset = TAILQ_NEXT(run, link);
                        continue;
                }
                if (cnt > 1) {
                        next = mset;
                        merge_run(mpart, run, cnt, len);
                        mset = next;
                }
        }
}

static void coalesce_cluster(rd_kafka_timers_t *rkts, void *arg) {
        rd_kafka_mock_cluster_t *mcluster = arg;
        rd_kafka_mock_topic_t *mtopic;
        int i;
        (void)rkts;
        TAILQ_FOREACH(mtopic, &mcluster->topics, link) {
                for (i = 0; i < mtopic->partition_cnt; i++)
                        coalesce_partition(&mtopic->partitions[i]);
        }
}

/*
 * Starts the coalescing timer on `mcluster`'s own timer list, so it runs on the mock's thread
 * and never races a request. The timer lives as long as the process: the cluster stops its
 * timers when it is destroyed, and the few bytes of the timer itself are not reclaimed.
 */
void devstack_mock_log_coalesce(rd_kafka_mock_cluster_t *mcluster) {
        rd_kafka_timer_t *tmr = rd_calloc(1, sizeof(*tmr));
        rd_kafka_timer_start(&mcluster->timers, tmr, MOCK_LOG_INTERVAL_US,
                             coalesce_cluster, mcluster);
}

/* The broker whose held fetches are answered when a record is appended to one of its partitions. */
#define PROMPT_BROKER_ID 2
/* How long after a held fetch arrived it is answered once a record is there: what a consumer with
 * fetch.wait.max.ms=20 got before (devstack's `PROMPT_WINDOW`), so records still travel in
 * batches of up to 20 ms under load, while an idle consumer asks only every 500 ms. 0 answers at
 * once: lower latency, but one invocation per record. */
#define PROMPT_ANSWER_AFTER_US (20 * 1000)
/* The shortest held fetch the prompt broker ends early: fetch.wait.max.ms 400 (devstack's
 * no-window mappings ask 500, its windowed ones at most 250). */
#define PROMPT_MIN_WAIT_US (400 * 1000)

rd_kafka_resp_err_t
__real_rd_kafka_mock_partition_log_append(rd_kafka_mock_partition_t *mpart,
                                          const rd_kafkap_bytes_t *records,
                                          const rd_kafkap_str_t *TransactionalId,
                                          int64_t *BaseOffset) __attribute__((weak));

/* Brings forward every fetch `mbroker` holds at the head of a connection's queue to
 * PROMPT_ANSWER_AFTER_US after it arrived (at once if that has passed). */
static void answer_held_fetches(rd_kafka_mock_broker_t *mbroker) {
        rd_kafka_mock_connection_t *mconn;
        rd_ts_t now = rd_clock();
        TAILQ_FOREACH(mconn, &mbroker->connections, link) {
                rd_kafka_buf_t *held = TAILQ_FIRST(&mconn->outbufs.rkbq_bufs);
                rd_ts_t answer_at;
                if (!held || held->rkbuf_reqhdr.ApiKey != RD_KAFKAP_Fetch ||
                    !mconn->write_tmr.rtmr_callback)
                        continue;
                /* Only a consumer that asked to wait PROMPT_MIN_WAIT_US or more (devstack's
                 * no-window mappings ask 500 ms) wants each record at once; a windowed mapping of
                 * the same topic asks 250 ms and keeps its whole wait. */
                if (held->rkbuf_ts_retry - held->rkbuf_ts_sent < PROMPT_MIN_WAIT_US)
                        continue;
                /* rkbuf_ts_sent: when the mock queued the answer (its hold began). */
                answer_at = held->rkbuf_ts_sent + PROMPT_ANSWER_AFTER_US;
                if (held->rkbuf_ts_retry <= answer_at)
                        continue;
                held->rkbuf_ts_retry = answer_at > now ? answer_at : 0;
                /* The write timer the mock armed for the held answer, fired then instead. */
                rd_kafka_timer_start_oneshot(
                    &mbroker->cluster->timers, &mconn->write_tmr, rd_true,
                    answer_at > now ? answer_at - now : 1,
                    mconn->write_tmr.rtmr_callback, mconn);
        }
}

/* Every produce request's append, on the mock's thread (the linker's --wrap sends it here). */
rd_kafka_resp_err_t
__wrap_rd_kafka_mock_partition_log_append(rd_kafka_mock_partition_t *mpart,
                                          const rd_kafkap_bytes_t *records,
                                          const rd_kafkap_str_t *TransactionalId,
                                          int64_t *BaseOffset) {
        rd_kafka_resp_err_t err = __real_rd_kafka_mock_partition_log_append(
            mpart, records, TransactionalId, BaseOffset);
        if (!err && mpart->leader && mpart->leader->id == PROMPT_BROKER_ID)
                answer_held_fetches(mpart->leader);
        return err;
}

/* Whether this binary was linked with the wrap, so the prompt broker answers early. */
int devstack_mock_answers_promptly(void) {
        return __real_rd_kafka_mock_partition_log_append != NULL;
}
