"""vitstudy."""
