"""``python -m bitlatent.serving --bundle DIR --host 127.0.0.1 --port 8080`` (the server image's entry point)."""

from bitlatent.serving.cli import serve

if __name__ == "__main__":
    serve(prog_name="python -m bitlatent.serving")
