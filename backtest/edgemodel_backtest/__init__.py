"""``edgemodel backtest``: replay a history through EdgeModel's own code on a virtual clock.

The pure core replays readings through the runtime's pipeline (feature builder and drift
monitor), the operator's plan (retraining policy, rollback rule) and the trainer's holdout
gate, in one process with no cluster, broker or MLflow server:

- :mod:`.history`: the CSV history, checked row by row with the runtime's payload rules;
- :mod:`.stream`: one replica's stream of predictions and their outcomes;
- :mod:`.loop`: the self-healing loop (runtime + operator + trainer) on the virtual clock;
- :mod:`.baselines`: the same data with a static model, a naive and a periodic retrain;
- :mod:`.figures`: rolling and overall RMSE and the events of one run, as plain data.

The shell around it: :mod:`.table` and :mod:`.report` render the figures (text, one
self-contained HTML page); :mod:`.command` reads the files and writes the outputs.
"""
