"""`python -m kdjax.infer`: top-k predictions of an exported model (implemented in kdjax/serving/infer.py)."""

if __name__ == "__main__":
    from kdjax.serving.infer import cli

    cli()
