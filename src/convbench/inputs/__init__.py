"""Input pipelines over prepared arrays or JPEG shards (tf.data, or plain arrays for a
backend without TensorFlow), and augmentation."""
