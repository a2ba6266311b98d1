"""CDK stacks. Stacks only wire constructs from `stacks.components` together."""
