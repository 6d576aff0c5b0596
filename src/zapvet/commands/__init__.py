"""Aurora's commands: proposals, the owner's confirmation, executors and their audit."""
