"""Pure Block Kit builders and the text policy every outside text goes through."""
