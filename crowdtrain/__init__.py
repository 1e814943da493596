"""crowdtrain: the command line that assembles the roles (the only importer of role packages)."""
