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
