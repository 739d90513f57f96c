"""`runyard`: the command line, one module per group of commands, all on `service.client`."""
