"""Command-line tools of vgg_keras: thin absl programs, flags → one library call."""
