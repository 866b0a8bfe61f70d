"""Option definitions shared by several commands (one place for names, defaults and help)."""
import typer

IMG = typer.Option("640", "--img", help="Image size: 640, or H,W such as 640,384.")
BATCH = typer.Option(1, "--batch", help="Batch size.")
NC = typer.Option(None, "--nc", help="Override the number of classes in the config.")
FUSE = typer.Option(False, "--fuse", help="Count the deploy model: as the framework's own fuse() leaves it "
                                          "(YOLOv5: BatchNorm folded into Conv / DWConv).")
