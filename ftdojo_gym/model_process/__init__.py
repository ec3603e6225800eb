"""The model process: the persistent child that trains and generates, and the env's handle on it.

* :mod:`~ftdojo_gym.model_process.client`: :class:`ModelWorker`, the env's side;
* :mod:`~ftdojo_gym.model_process.protocol`: every request, event and result, and the wire format;
* :mod:`~ftdojo_gym.model_process.worker`: the child's main loop;
* :mod:`~ftdojo_gym.model_process.sft`: training (trl);
* :mod:`~ftdojo_gym.model_process.generation`: batched greedy generation.

Only ``worker``, ``sft`` (at run time) and ``generation`` (at run time) import torch.
"""
