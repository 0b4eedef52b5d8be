"""`python -m kdjax.export`: write a serving artifact of an export (implemented in kdjax/serving/stablehlo.py)."""

if __name__ == "__main__":
    from kdjax.serving.stablehlo import cli

    cli()
