"""The EdgeModel trainer: retrain, gate, register, promote and roll back in MLflow.

Modules, from the command line down:

- :mod:`.main` - argv, termination log, exit codes (I/O only);
- :mod:`.pipeline` - the ``train`` and ``rollback`` jobs, wiring everything below;
- :mod:`.tracking` - MLflow runs, datasets and training windows (I/O only);
- :mod:`.data` - window tables: read a file, normalise, keep the most recent;
- :mod:`.train` and :mod:`.promotion` - pure: split, fit, score, gate; no I/O here.

Features come from :mod:`edgemodel.features` and model storage from
:mod:`edgemodel.registry`, shared with the runtime. The trainer never imports operator
or runtime internals; the operator decides rollbacks with :mod:`edgemodel_operator.rollback`.
"""
