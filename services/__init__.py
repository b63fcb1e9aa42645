"""borgflow's services. Each imports `shared`, never another service; `services.cli` composes them."""
