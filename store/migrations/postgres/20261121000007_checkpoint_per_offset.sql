-- Replay rules belong to one exact offset: keep one row per saved offset, so the rules of
-- the offset Kafka actually holds are found even when a later save was never committed
-- (a commit refused after a rebalance, or a crash between the save and the commit).
ALTER TABLE stream_checkpoints DROP CONSTRAINT stream_checkpoints_pkey;
ALTER TABLE stream_checkpoints ADD PRIMARY KEY (consumer_group, topic, partition, next_offset);
