"""What a task is to the engine: its task.yaml (`spec`), its errors, and the registry of public datasets
its data come from (`datasets`). Task folders under tasks/ import from here; the engine never imports tasks/."""
