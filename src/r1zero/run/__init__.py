"""Running an experiment: the Hydra entry points (:mod:`.cli`, :mod:`.config`), checks before launch
(:mod:`.preflight`, :mod:`.cost`, the ``python -m r1zero.run.dryrun`` command), and what a run leaves and reads in
its directory (:mod:`.rundir`, :mod:`.runlock`, :mod:`.checkpoint`, :mod:`.manifest`, :mod:`.tracking`,
:mod:`.preemption`), plus process setup (:mod:`.seeding`, :mod:`.hostmem`).

May import: ``schema``, ``data``, ``learner.strategy.env`` (a process's place in a distributed job)."""
