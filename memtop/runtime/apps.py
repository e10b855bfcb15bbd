def application_report(target):
    return None
