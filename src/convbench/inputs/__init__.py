"""Input pipelines: tf.data over prepared arrays or JPEG shards, and augmentation."""
