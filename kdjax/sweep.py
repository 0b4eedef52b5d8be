"""`python -m kdjax.sweep`: the accuracy benchmark (implemented in kdjax/tools/sweep.py)."""

if __name__ == "__main__":
    from kdjax.tools.sweep import cli

    cli()
