"""Write a QA dataset with an independent LLM: synthetic (documents, topics) or from seeds.

A generation follows its modules in this order:

- ``config``: ``GenerateConfig`` and its parts, loading, the rule that the generator is not a
  candidate;
- ``sources``: documents (text files or a dataset's contexts) cut into chunks;
- ``plan``: which chunk, topic or seeds each request asks about, a pure function of the seed;
- ``prompts`` and ``replies``: the message sent, the reply's shape and how it is read;
- ``asking``: one request (with structured output and re-asks) through ``ChatClient``;
- ``checks`` and ``dedup``: whether an item is usable, and whether it was seen before;
- ``collecting``: accepted items become records, in plan order;
- ``output``: the dataset file, checked first and written atomically;
- ``run``: ``generate_async`` and ``generate``, which send the plan in waves, and the
  ``GenerationReport`` they return.

The entry points are re-exported here; everything else is imported from its module.
"""

from raq.stages.generation.config import GenerateConfig, load_generate_config
from raq.stages.generation.run import GenerationReport, generate, generate_async

__all__ = [
    "GenerateConfig",
    "GenerationReport",
    "generate",
    "generate_async",
    "load_generate_config",
]
