//! Test kit: an in-memory network of nodes, a scenario-script interpreter and a log renderer (in progress).
