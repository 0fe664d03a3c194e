-- Where a stream processor resumes a Kafka partition: the committed offset and the
-- replay rules that go with it (written before the offset is committed to Kafka).
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
