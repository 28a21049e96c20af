"""Training samples/s of ``trainer fit cnn`` in float32 against mixed precision (bfloat16;
float16 too when a GPU is present), side by side in one process, interleaved, medians.

    python scripts/bench_precision.py --repeats 3 --epochs 3
"""

from __future__ import annotations

import _bench
from _bench import log, markdown_table, median


def main(argv=None) -> None:
    p = _bench.parser(__doc__.splitlines()[0], repeats=3)
    p.add_argument("--arch", default="cnn", help="built-in architecture (its defaults)")
    args = p.parse_args(argv)
    _bench.trainer_environment()  # every run here is a trainer fit: its settings, as the CLI applies them
    _bench.apply_quick(args)
    info = _bench.print_header(f"Precision: trainer fit {args.arch}, float32 vs mixed precision")
    import tensorflow as tf

    device = (f"GPU ({', '.join(info['gpus'])})" if info["gpus"]
              else f"CPU: {info['cpu']}, {info['cores']} cores, bf16 instructions: "
                   f"{'yes' if {'avx512_bf16', 'amx_bf16'} & set(info['cpu_flags']) else 'no'}")
    print(f"device: {device}\n")
    policies = ["float32", "mixed_bfloat16"] + (["mixed_float16"] if tf.config.list_physical_devices("GPU") else [])
    runs = {policy: [] for policy in policies}
    try:
        for r, policy in _bench.interleaved(args.repeats, policies):
            config = _bench.trainer_config(args.arch, args.data, precision=policy, epochs=args.epochs,
                                           train_limit=args.train_limit, test_limit=args.test_limit)
            res = _bench.run_trainer(config)
            runs[policy].append(res)
            log(f"[{r + 1}/{args.repeats}] {policy:14s} {res.samples_per_second():9,.0f} samples/s, "
                f"test accuracy {res.test_accuracy:.4f}")
    finally:
        _bench.reset_keras("float32")
    print(f"Training samples/s, epochs 2..{args.epochs}, median of {args.repeats} interleaved repeats; "
          "ratio = median of per-repeat ratios to float32.\n")
    rows = []
    for policy, results in runs.items():
        ratios = [x.samples_per_second() / f.samples_per_second() for x, f in zip(results, runs["float32"])]
        rows.append([policy, median([x.samples_per_second() for x in results]), f"{median(ratios):.2f}",
                     f"{median([x.test_accuracy for x in results]):.4f}"])
    print(markdown_table(["precision", "samples/s", "vs float32", "test accuracy"], rows))


if __name__ == "__main__":
    main()
