"""`python -m arner_jax.sweep [run | dry-run | report] ...` (see arner_jax.sweep); without a subcommand: run."""
import sys


def main(argv: list[str]) -> object:
    command, rest = (argv[0], argv[1:]) if argv and argv[0] in ("run", "dry-run", "report") else ("run", argv)
    if command == "report":
        from arner_jax.sweep.report import main as report

        return report(rest)
    from arner_jax.sweep.run import main as run

    return run(rest + ["--dry_run"] if command == "dry-run" else rest)  # exits 1 when a run failed, 2 on a user error


if __name__ == "__main__":
    from arner_jax.system.entrypoint import start

    start("arner_jax.sweep.__main__:main", sys.argv[1:])
