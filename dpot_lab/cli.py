"""``dpot-lab`` sub-commands: pre-train, fine-tune, evaluate a checkpoint, generate data.

    dpot-lab pretrain configs/tiny_cpu.yaml --out runs/tiny [--max-steps N] [--resume | --overwrite]
        [--allow-changes] [--set optim.lr=1e-4 --set data.num_workers=8 ...]
    dpot-lab finetune configs/finetune_example.yaml --out runs/ft [--from CHECKPOINT]
    dpot-lab evaluate runs/tiny/checkpoints/best.pt --data a.h5 b.h5 [--horizon 10] [--last 8]
    dpot-lab generate ns2d --out ns.h5 --n-samples 32 --resolution 64 --seed 0 --param nu=1e-3
        [--overwrite]

The same entry point runs under torchrun (one process per GPU; DDP or FSDP as the config says)::

    torchrun --standalone --nproc_per_node=2 -m dpot_lab.cli pretrain CONFIG --out RUN_DIR
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("dpot_lab.cli")


def _train(args: argparse.Namespace, init_from: str | None = None, need_init: bool = False) -> int:
    from dpot_lab.train import distributed
    from dpot_lab.train.config import TrainConfig
    from dpot_lab.train.trainer import Trainer

    changes = dict(args.settings or [])
    if args.max_steps is not None:
        changes["steps"] = args.max_steps
    if init_from is not None:
        changes["init_from"] = init_from
    if getattr(args, "allow_partial", False):
        changes["init_allow_partial"] = True
    if args.quiet:
        changes["log.progress"] = False
    config = TrainConfig.from_yaml(args.config, **changes)  # before checks (preset: null)
    if need_init and config.init_from is None:
        raise ValueError(
            f"{args.config}: init_from: no checkpoint to fine-tune from: set init_from in the "
            "config or pass --from CHECKPOINT (see configs/finetune_example.yaml)"
        )
    if args.allow_changes and not args.resume:
        raise ValueError("--allow-changes: only with --resume (it accepts a changed recipe)")
    trainer = None
    try:
        trainer = Trainer(config, run_dir=args.out, resume=args.resume, overwrite=args.overwrite,
                          allow_changes=args.allow_changes)  # fmt: skip
        trainer.fit()
        if trainer.dist.is_main:
            if trainer.saved_step != trainer.step:
                raise RuntimeError(_not_saved(trainer))
            print(f"run directory: {trainer.run_dir}")
            if trainer.last_eval:
                print(_table(trainer.last_eval, ["l2re", "persistence"]))
    finally:
        if trainer is not None:
            trainer.close()
        distributed.teardown()
    return 0


def _not_saved(trainer) -> str:
    """Why a run ended without a checkpoint of its last step."""
    last = "none" if trainer.saved_step is None else f"step {trainer.saved_step}"
    return (
        f"no checkpoint of step {trainer.step} was written in {trainer.run_dir} "
        f"({trainer.checkpoint_error or 'not saved'}); {trainer.guard.skipped} of "
        f"{trainer.step} steps were skipped as non-finite; newest checkpoint of this run: {last}"
    )


def _pretrain(args: argparse.Namespace) -> int:
    return _train(args)


def _finetune(args: argparse.Namespace) -> int:
    return _train(args, init_from=args.from_, need_init=True)


def _table(results: dict[str, dict[str, float]], columns: list[str]) -> str:
    """A fixed-width table: one row per source, one column per metric."""
    width = max([len("source"), *(len(k) for k in results)])
    lines = [f"{'source':<{width}}  " + "  ".join(f"{c:>12}" for c in columns)]
    for name, row in results.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[c]:>12.5f}" for c in columns))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    import dpot_lab as dl
    from dpot_lab.evaluate.score import UnscorableTruth, score_model

    for path in args.data:  # before the checkpoint is read
        if not any(c in path for c in "*?[") and not Path(path).exists():
            raise FileNotFoundError(f"--data: {path} does not exist")
    model = _load_any(args.checkpoint)
    t_in = model.config.in_timesteps
    results = {}
    for path in args.data:
        ds = dl.open_dataset(path)
        n = ds.sizes["sample"]
        if args.last is not None:
            ds = ds.isel(sample=slice(max(n - args.last, 0), n))
        steps = ds.sizes["time"] - t_in
        if args.horizon is not None:
            steps = min(steps, args.horizon)
        if steps < 1:
            raise ValueError(f"{path}: {ds.sizes['time']} frames leave nothing after t_in={t_in}")
        try:
            score = score_model(
                model, ds, t_in, steps, batch_size=args.batch_size, progress=not args.quiet
            )
        except UnscorableTruth as err:
            raise ValueError(f"{path}: {err}") from err
        diverged = score["sample"].values[score["l2re"].isnull().any("field").values]
        if diverged.size:
            log.warning(
                "%s: the prediction of sample(s) %s is NaN/Inf (the model diverged, or their "
                "input frames hold NaN/Inf): their l2re and the mean are NaN",
                path, diverged.tolist(),
            )  # fmt: skip
        results[str(path)] = {
            "l2re": float(score["mean"]),
            "vrmse": float(score["vrmse"].mean()),
            "persistence": float(score["persistence_mean"]),
            "samples": ds.sizes["sample"],
            "steps": steps,
        }
    print(_table(results, ["l2re", "vrmse", "persistence"]))
    return 0


def _load_any(path: str):
    """Our checkpoint, or else a DPOT release checkpoint (the file read once)."""
    import dpot_lab as dl
    from dpot_lab.models.checkpoint import open_checkpoint

    opened = open_checkpoint(path)
    return (dl.load_checkpoint if opened.kind == "dpot-lab" else dl.load_official)(opened)


def _parse_param(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as a Python literal when it is one (1e-3, 64, True)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def _file_out(path: str) -> None:
    """Refuse an output path that is a folder before any work is done."""
    if Path(path).is_dir():
        raise ValueError(f"{path} is a folder: give the path of the file to write in it")


def _generate(args: argparse.Namespace) -> int:
    import dpot_lab as dl

    _file_out(args.out)
    params = dict(args.param or [])
    path = dl.generate(
        args.pde,
        args.out,
        n_samples=args.n_samples,
        resolution=args.resolution,
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
        **params,
    )
    print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import dpot_lab as dl
    from dpot_lab.models.checkpoint import open_checkpoint

    _file_out(args.out)
    opened = open_checkpoint(args.checkpoint)
    extra = opened.extra
    meta = {**extra.get("metadata", {}), "exported_from": str(args.checkpoint)}
    if opened.kind == "dpot-lab":
        from dpot_lab.train.lora import is_adapted, merged_state

        if is_adapted(opened.state):  # a LoRA run: adapters folded into plain weights
            opened = opened._replace(state=merged_state(opened.state))
            meta["lora_merged"] = True
    model = dl.load_checkpoint(opened)
    if "step" in extra:
        meta["step"] = int(extra["step"])
    if "trainer_state" in extra:
        meta["best_val_l2re"] = float(extra["trainer_state"]["best"])
    path = dl.save_checkpoint(args.out, model, metadata=meta, file_format=args.format)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, weights and config only)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dpot_lab.viz import serve_demo

    serve_demo(port=args.port, address=args.address)
    return 0


def _setting(text: str) -> tuple[str, object]:
    """argparse type of ``--set``: a dotted config key and its YAML value."""
    from dpot_lab.train.config import parse_setting

    try:
        return parse_setting(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_from(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low``."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?\d+\s*", text) or int(text) < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {text!r}")
        return int(text)

    return parse


class _GeneratorsHelp(argparse.Action):
    """``generate --help``: the usage, then every generator with its parameters and defaults
    (read only when asked for: it imports the solvers)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args, **kwargs) -> None:
        from dpot_lab.data.generation import describe_generators

        parser.epilog = describe_generators()
        parser.print_help()
        parser.exit()


def _port(text: str) -> int:
    """argparse type of ``--port``: a TCP port number."""
    if not re.fullmatch(r"\s*\d+\s*", text) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpot-lab",
        description="DPOT workbench: train, fine-tune, evaluate, generate data, view rollouts.",
    )
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_arguments(sub.add_parser("pretrain", help="pre-train from a YAML config"), False)
    _train_arguments(sub.add_parser("finetune", help="fine-tune from a checkpoint"), True)
    _evaluate_arguments(sub.add_parser("evaluate", help="rollout L2RE / VRMSE per data file"))
    _generate_arguments(
        sub.add_parser(
            "generate", help="write a trajectory set with a built-in solver", add_help=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )  # fmt: skip
    _export_arguments(
        sub.add_parser(
            "export",
            help="copy a run checkpoint as weights + config + metadata only (LoRA adapters merged)",
        )
    )
    _demo_arguments(
        sub.add_parser("demo", help="serve the rollout viewer on the shipped demo model and data")
    )
    return parser


def _train_arguments(p: argparse.ArgumentParser, finetune: bool) -> None:
    """The arguments of ``pretrain``, and of ``finetune`` when ``finetune``."""
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--max-steps", type=_int_from(1), help="override the config's steps")
    p.add_argument(
        "--set", dest="settings", action="append", type=_setting, metavar="KEY=VALUE",
        help="change a config value, e.g. --set optim.lr=1e-4 --set data.num_workers=8",
    )  # fmt: skip
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last.pt")
    again.add_argument(
        "--overwrite", action="store_true",
        help="start anew; RUN_DIR's earlier run is set aside in RUN_DIR.old-* and deleted "
        "when the new run writes its first checkpoint",
    )  # fmt: skip
    p.add_argument(
        "--allow-changes", action="store_true",
        help="with --resume: train on with a recipe (lr, batch size, seed, ...) that differs "
        "from the checkpoint's",
    )  # fmt: skip
    if finetune:
        p.add_argument(
            "--from", dest="from_",
            help="pre-trained checkpoint: a path, hf://owner/repo/file or a released DPOT size "
            "(Ti, S, M, L, H); default: the config's init_from (see "
            "configs/finetune_example.yaml)",
        )  # fmt: skip
        p.add_argument(
            "--allow-partial", action="store_true",
            help="train even when under half of the model's tensors come from --from",
        )  # fmt: skip
    p.set_defaults(func=_finetune if finetune else _pretrain)


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--data", nargs="+", required=True, help="trajectory files")
    p.add_argument("--horizon", type=_int_from(1), help="scored rollout steps (default: all)")
    p.add_argument("--last", type=_int_from(1), help="only the last N trajectories (test split)")
    p.add_argument("--batch-size", type=_int_from(1), default=8)
    p.set_defaults(func=_evaluate)


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action=_GeneratorsHelp, help="list the generators and exit")
    p.add_argument("pde", help="generator name, e.g. ns2d, dr, swe, cns2d, ns3d")
    p.add_argument("--out", required=True)
    p.add_argument("--n-samples", type=_int_from(1), required=True)
    p.add_argument("--resolution", type=_int_from(1), required=True)
    p.add_argument("--seed", type=_int_from(0), default=0)
    p.add_argument("--param", type=_parse_param, action="append", help="solver parameter key=value")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_generate)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument(
        "--format",
        choices=("torch", "safetensors"),
        help="file type written (default: safetensors if OUT ends in .safetensors, else torch)",
    )
    p.set_defaults(func=_export)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=5006, help="TCP port, 1..65535")
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=_demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sub-command; an error prints one line (``--traceback``: the traceback), returns 2."""
    args = build_parser().parse_args(argv)
    quiet = args.quiet or os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 reports
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except Exception as err:
        if args.traceback:
            raise
        print(f"dpot-lab {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: Exception) -> str:
    """The first line of the message, with the error's type unless a user's mistake (a value, a
    file, a run) explains it."""
    lines = str(err).strip().splitlines() or [repr(err)]
    text = lines[0] + (" (more with --traceback)" if len(lines) > 1 else "")
    if isinstance(err, (ValueError, OSError, RuntimeError)):
        return text
    return f"{type(err).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
