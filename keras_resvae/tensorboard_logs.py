"""TensorBoard logs of a run's epochs, written without TensorFlow.

`keras.callbacks.TensorBoard` writes through `tf.summary`, so it imports
TensorFlow (about 0.45 GB resident) on every backend. A run's logs are only
its epoch metrics, so `EpochScalars` writes them as TensorBoard event records
with the `tensorboard` package's own record writer and protocol buffers: the
same `train/` and `validation/` folders and `epoch_<metric>` tags as Keras's
callback, readable by `tensorboard --logdir`.
"""

import os
import socket
import time

import keras


class EpochScalars(keras.callbacks.Callback):
    """Writes each epoch's metrics, and the learning rate, as TensorBoard scalars.

    Training metrics go to `log_dir/train`, validation metrics (`val_*`, without
    the prefix) to `log_dir/validation`, tagged `epoch_<name>` at step `epoch`,
    as `keras.callbacks.TensorBoard` names them. Each `fit` appends a new event
    file, so a resumed run keeps the earlier epochs' logs.

    Example:
    >>> vae.fit(train, validation_data=test, epochs=5, callbacks=[EpochScalars("runs/a/logs")])
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self._writers = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        learning_rate = _learning_rate(self.model)
        if learning_rate is not None and "learning_rate" not in logs:
            logs["learning_rate"] = learning_rate
        split = {"train": {}, "validation": {}}
        for name, value in logs.items():
            if name.startswith("val_"):
                split["validation"][name[4:]] = value
            else:
                split["train"][name] = value
        for folder, values in split.items():
            if values:
                self._write(folder, epoch, values)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _write(self, folder, step, values):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=f"epoch_{name}", simple_value=float(value))
                for name, value in values.items()
            ]
        )
        writer = self._writer(folder)
        writer.write(
            event_pb2.Event(
                wall_time=time.time(), step=int(step), summary=summary
            ).SerializeToString()
        )
        writer.flush()

    def _writer(self, folder):
        if folder not in self._writers:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter

            path = os.path.join(self.log_dir, folder)
            os.makedirs(path, exist_ok=True)
            name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
            writer = RecordWriter(open(os.path.join(path, name), "ab"))
            writer.write(
                event_pb2.Event(
                    wall_time=time.time(), file_version="brain.Event:2"
                ).SerializeToString()
            )
            self._writers[folder] = writer
        return self._writers[folder]


def _learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    rate = getattr(optimizer, "learning_rate", None)
    if rate is None:
        return None
    try:
        return float(keras.ops.convert_to_numpy(rate))
    except (TypeError, ValueError):
        return None
