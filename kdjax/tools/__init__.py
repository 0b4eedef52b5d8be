"""Command-line tools around training: `python -m kdjax.tools.<name>` for bench, bench_input, cache_teacher, convert,
prepare_data and verify_golden; `python -m kdjax.sweep` for the accuracy benchmark."""
