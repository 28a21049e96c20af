"""Trains every built-in architecture with its defaults and writes a markdown table: epochs run,
test accuracy, wall time (one ``trainer fit ARCH`` each, in this process).

    python scripts/reproduce.py --out docs/reproduce.md
    python scripts/reproduce.py --archs fcn,mlp --quick --out /tmp/r.md
"""

from __future__ import annotations

import os

import _bench
from _bench import log, markdown_table


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], timing=False)
    p.add_argument("--archs", help="comma-separated built-in architectures (default: every MNIST one)")
    p.add_argument("--out", default=os.path.join(_bench.REPO, "docs", "reproduce.md"),
                   help="markdown file to write")
    p.add_argument("--logdir", help="keep the run directories here (default: temporary, removed)")
    args = p.parse_args(argv)
    _bench.trainer_environment()  # every run here is a trainer fit: its settings, as the CLI applies them
    quick = {"epochs": 1, "train_limit": args.train_limit or 256, "test_limit": args.test_limit or 128}
    overrides = quick if args.quick else {"train_limit": args.train_limit, "test_limit": args.test_limit}

    archs = args.archs.split(",") if args.archs else _bench.mnist_architectures()
    import io
    from contextlib import redirect_stdout

    header = io.StringIO()
    with redirect_stdout(header):
        _bench.print_header("Reproduction: every built-in architecture with its defaults")
    print(header.getvalue(), end="", flush=True)
    rows = []
    for arch in archs:
        config = _bench.trainer_config(arch, args.data, **overrides)
        res = _bench.run_trainer(config, keep_dir=args.logdir)
        row = [arch, res.extra["epochs_run"], f"{res.test_accuracy:.4f}", f"{res.wall_seconds:.1f}",
               f"{res.fit_seconds:.1f}", config.optimizer, config.batch_size, str(config.validation or "none")]
        log(f"{arch}: " + ", ".join(map(str, row[1:])))
        rows.append(row)
    table = markdown_table(["architecture", "epochs run", "test accuracy", "wall time s",
                            "of which model.fit s", "optimizer", "batch", "validation"], rows)
    note = ("Quick smoke run: tiny data, 1 epoch, accuracies meaningless.\n\n" if args.quick else "")
    text = (header.getvalue() + note + "Wall time: data loading, build, training with every monitor on, "
            "test evaluation, saving.\n\n" + table + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(table)
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
