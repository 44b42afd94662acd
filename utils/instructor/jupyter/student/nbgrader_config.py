"""nbgrader settings for a student's JupyterLab (the Validate button), found on JUPYTER_CONFIG_PATH.

Validate runs the whole notebook; loop-based answers (the deformable convolution in nested
Python loops) take seconds per check cell, so a cell gets the same 180 s as in grading.
"""
c = get_config()  # provided by nbgrader

c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True
