"""The sampler: decides what to read and how often, keeps bounded histories."""
