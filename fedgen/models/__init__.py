"""Models behind one interface: initial parameters, local training, probabilities, gradients."""
