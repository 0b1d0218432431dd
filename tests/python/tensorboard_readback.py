"""TensorBoard reads the event files Sculpt writes (tb_write_sample), with exact values.

Usage: tensorboard_readback.py TB_WRITE_SAMPLE WORK_DIR. Exit 77 (skipped) when the venv lacks
the `tensorboard` package.
"""
import glob
import os
import shutil
import struct
import subprocess
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    from tensorboard.compat.proto import event_pb2
except ImportError as e:  # reported as skipped by ctest
    print(f"SKIPPED: {e}")
    sys.exit(77)

writer, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
subprocess.run([writer, work], check=True)


def f32(x):
    """x rounded to float32, as TensorBoard's simple_value holds it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# What tb_write_sample writes: steps 0..9 from one writer, 10..14 from a second one (own file).
steps = range(15)
expected = {
    "train/loss": [(s, 1700000000.0 + 0.5 * s, f32(1.0 / (s + 1))) for s in steps],
    "train/lr": [(s, 1700000000.0 + 0.5 * s, f32(0.001 * s)) for s in steps],
    "val/accuracy": [(s, None, f32(-0.1 * s)) for s in steps if s % 5 == 4],
}


def raw_events(path):
    """The file's events as written (EventFileLoader would migrate simple_value to a tensor)."""
    return [event_pb2.Event.FromString(r)
            for r in event_file_loader.RawEventFileLoader(path).Load()]


# 1. The raw events of each file: the version event first, then one simple_value per event.
files = sorted(glob.glob(os.path.join(work, "events.out.tfevents.*.sculpt")))
assert len(files) == 2, files
raw = {tag: [] for tag in expected}
for path in files:
    events = raw_events(path)
    assert events[0].file_version == "brain.Event:2", events[0]
    assert events[0].wall_time > 1.6e9, events[0]
    for e in events[1:]:
        assert not e.file_version, e
        assert len(e.summary.value) == 1, e
        v = e.summary.value[0]
        assert v.WhichOneof("value") == "simple_value", v
        raw[v.tag].append((e.step, e.wall_time, v.simple_value))
for tag, want in expected.items():
    got = raw[tag]
    assert [(s, v) for s, _, v in got] == [(s, v) for s, _, v in want], (tag, got)
    assert all(w is None or g == w for (_, g, _), (_, w, _) in zip(got, want)), (tag, got)

# TensorBoard's loader drops a record whose CRC fails without a word, so the exact counts above
# are what check Sculpt's CRCs; a flipped byte in the last record shows the check is live.
broken = work + "-broken"  # beside the log folder, which must hold only Sculpt's files
shutil.rmtree(broken, ignore_errors=True)
os.makedirs(broken)
with open(files[0], "rb") as f:
    data = bytearray(f.read())
data[-6] ^= 0x01
with open(os.path.join(broken, "events.out.tfevents.0.broken"), "wb") as f:
    f.write(data)
n_good, n_broken = len(raw_events(files[0])), len(raw_events(f.name))
assert n_broken == n_good - 1, (n_good, n_broken)

# 2. TensorBoard's own view of the folder: the same scalars under the same tags.
acc = event_accumulator.EventAccumulator(work, size_guidance={event_accumulator.SCALARS: 0})
acc.Reload()
assert sorted(acc.Tags()["scalars"]) == sorted(expected), acc.Tags()
for tag, want in expected.items():
    got = [(e.step, e.value) for e in acc.Scalars(tag)]
    assert got == [(s, v) for s, _, v in want], (tag, got)
print(f"tensorboard readback: ok ({len(files)} file(s), "
      f"{sum(len(v) for v in expected.values())} scalars)")
