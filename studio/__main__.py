from studio.cli import app

app(prog_name="studio")
