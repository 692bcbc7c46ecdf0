"""What goes onto the EFS file system, and the tools that build it. Not part of the Lambda zip."""
