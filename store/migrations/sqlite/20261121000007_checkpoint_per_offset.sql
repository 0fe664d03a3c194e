-- Replay rules belong to one exact offset: keep one row per saved offset, so the rules of
-- the offset Kafka actually holds are found even when a later save was never committed
-- (a commit refused after a rebalance, or a crash between the save and the commit).
CREATE TABLE stream_checkpoints_new (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition, next_offset)
);
INSERT INTO stream_checkpoints_new SELECT consumer_group, topic, partition, next_offset, metadata, updated_at FROM stream_checkpoints;
DROP TABLE stream_checkpoints;
ALTER TABLE stream_checkpoints_new RENAME TO stream_checkpoints;
