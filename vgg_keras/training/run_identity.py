"""A model dir holds one run. At the run's start ``MODEL_DIR/run.json`` records the settings that
define it and the identity of its data; a later command into the same model dir that would
change the run (another batch size, learning rate, schedule, length, net, data …) is refused
before anything heavy or any write, with one line per differing setting and the way out. With
``--allow_changed_settings`` the change is deliberate: it is made, printed in the log and
recorded in ``run.json``'s ``changes``.

The settings declared ``changeable`` (``run_config``) may differ between the starts of one run:
they change how it runs (where, on how many devices, how often it saves, how it reports), not
what it computes.
The global batch is ``--batch_size`` whatever the number of replicas, so ``--num_gpus`` may
change with it. ``--data_dir`` may move: the data is compared by content (its format, counts
and every shard's name and size), not by path.
"""

import dataclasses
import datetime
import hashlib
import json
import os

from pipelines.foundation import errors
from pipelines.foundation import settings
from pipelines.foundation import storage
from vgg_keras.artifacts import layout
from vgg_keras.nets import published
from vgg_keras.training import run_config

VERSION = 1
# How a damaged file of a run's own is mended.
RECOVER = ("restore it from a copy, or start the run afresh in a new --model_dir (its "
           "checkpoints stay readable by vgg-evaluate and vgg-export)")
# May change between the starts of one run (README: "Resuming a run").
CHANGEABLE = settings.changeable(run_config.TrainConfig)


class ChangedSettings(errors.UserError):
    """A command would change the run its model dir holds; the message lists the changes."""


def defining_settings(cfg):
    """The settings of ``cfg`` that define its run, as JSON values."""
    return {field.name: _json(getattr(cfg, field.name)) for field in dataclasses.fields(cfg)
            if field.name not in CHANGEABLE}


def data_identity(info):
    """What the data is, independent of where it lies: its format, counts, and a digest of every
    shard's split, name and size (sizes from the manifest where it records them, else one
    ``stat`` per shard: start-up grows with the shards, never with the images)."""
    shards = [[str(split), *entry] for split in sorted(info.files, key=str)
              for entry in info.shard_sizes(info.files[split])]
    digest = hashlib.sha256(json.dumps(shards).encode()).hexdigest()
    return {"format": info.format, "num_classes": info.num_classes,
            "num_examples": {str(k): v for k, v in sorted(info.num_examples.items(), key=str)},
            "shards": len(shards), "sha256": digest}


@dataclasses.dataclass
class RunIdentity:
    """The identity of the run a command asks for, checked against its model dir."""

    model_dir: str
    settings: dict
    data: dict
    recorded: dict | None  # run.json as found, or None
    changes: dict  # {name: (there, now)} allowed by --allow_changed_settings

    def describe_changes(self):
        """The log line of a deliberate change, or None."""
        if not self.changes:
            return None
        return ("settings changed deliberately (--allow_changed_settings), recorded in "
                f"{os.path.join(self.model_dir, layout.RUN_FILE)}: "
                + "; ".join(f"{_flag(name, there)} → {_flag(name, now)}"
                            for name, (there, now) in self.changes.items()))

    def record(self):
        """Writes ``run.json`` (whole: a temporary name, then renamed) at a run's first start,
        when a change was allowed, or for a model dir from before ``run.json`` existed; only
        the chief calls this."""
        if self.recorded and not self.changes:
            return
        now = _now()
        history = list((self.recorded or {}).get("changes", []))
        if self.changes:
            history.append({"time": now, "settings": {
                name: {"there": there, "now": now_value}
                for name, (there, now_value) in self.changes.items()}})
        value = {"version": VERSION, "created": (self.recorded or {}).get("created", now),
                 "settings": self.settings, "data": self.data, "changes": history}
        storage.makedirs(self.model_dir)
        storage.write_json(os.path.join(self.model_dir, layout.RUN_FILE), value)


def check(cfg, info):
    """The ``RunIdentity`` of ``cfg`` on the data ``info``, compared with the run in
    ``cfg.model_dir`` if that holds a checkpoint (a run that never saved one may start over
    with other settings). Reads only ``run.json`` and the data's metadata; writes nothing.

    Raises:
        ChangedSettings: one line per differing setting, unless ``cfg.allow_changed_settings``.
    """
    settings, data = defining_settings(cfg), data_identity(info)
    path = os.path.join(cfg.model_dir, layout.RUN_FILE)
    recorded = storage.read_json(path, written_by="vgg-train", fix=RECOVER)
    if recorded is None or not cfg.has_checkpoint():
        return RunIdentity(cfg.model_dir, settings, data, None, {})
    # A setting newer than the run.json counts as its default there.
    there = {name: recorded["settings"].get(name, _json(run_config.DEFAULTS.get(name)))
             for name in settings}
    changes = {name: (there[name], value) for name, value in settings.items()
               if there[name] != value}
    if recorded.get("data") != data:
        changes["data"] = (recorded.get("data"), data)
    if changes and not cfg.allow_changed_settings:
        lines = [f"--model_dir={cfg.model_dir} holds a run with other settings (its "
                 f"{layout.RUN_FILE}):"]
        lines += [f"  {_flag(name, there)} there, {_flag(name, now)} now"
                  for name, (there, now) in changes.items()]
        lines.append("Give a new --model_dir to start another run, or --allow_changed_settings "
                     "to change this one deliberately (recorded in its run.json and the log).")
        raise ChangedSettings("\n".join(lines))
    return RunIdentity(cfg.model_dir, settings, data, recorded, changes)


def _flag(name, value):
    """A setting as the flag that gives it: ``--batch_size=32``, ``--scale=256,512``."""
    if name == "data":
        if value is None:
            return "data unrecorded"
        counts = ", ".join(f"{count:,} {split}" for split, count in value["num_examples"].items()
                           if count is not None)
        return (f"data {value['format']} ({counts or 'uncounted'}; {value['shards']:,} shards, "
                f"names and sizes sha256 {value['sha256'][:12]})")
    if value is None:
        return f"--{name} unset"
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, list):
        return f"--{name}=" + ",".join(f"{v:g}" if isinstance(v, float) else str(v)
                                       for v in value)
    return f"--{name}={value:g}" if isinstance(value, float) else f"--{name}={value}"


def _json(value):
    """A setting's value as ``run.json`` records it: ``--init`` as its flag writes it."""
    if isinstance(value, published.Weights):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def _now():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")
