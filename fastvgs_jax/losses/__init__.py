"""Pure loss functions of arrays (no parameters, no modules): usable in jit and on a mesh."""
