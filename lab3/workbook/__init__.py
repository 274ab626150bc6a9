"""The workbook's glue: what the notebooks call, kept apart from the library's core.

    exploration  the dataset in numbers and pictures (notebook 01)
    ablation     the preprocessing experiments (notebook 02)
    results      trained depths read back, evaluated, ranked (notebook 05)
    attention    Grad-CAM maps of the trained depths (notebook 05)
    narrative    the report's prose, written from the numbers
    training     each depth trained in turn, watched live (notebook 04); finished depths (05)
    live         the live curves and progress bar, only in a JupyterLab kernel
    interactive  `lab3 lab`: the student's copies of the notebooks in one run folder
    folders      one run folder's layout and record
    runner       `lab3 run`: the notebooks executed in order (papermill), resumable
    notebook_exec, estimate   a notebook's execution with progress; a run's time, before it starts
    report       the PDF/HTML report from the executed notebooks

The engine never imports these; they import the engine and the core.
"""
