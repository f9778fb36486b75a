"""testplan"""
