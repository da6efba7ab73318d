"""setuptools entry point that reads nbdev's settings.ini (no pkg_resources: setuptools>=81 removed it)."""
from configparser import ConfigParser
from pathlib import Path
import re

import setuptools

here = Path(__file__).parent
config = ConfigParser(delimiters=['='])
config.read(here / 'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'License :: OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
py_versions = '3.10 3.11 3.12 3.13'.split()
min_python = cfg['min_python']

requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
# settings.ini separates requirements with spaces, so specifiers like 'nbdev>=2.4.14,<3' stay whole.
console_scripts = cfg.get('console_scripts', '').split()

readme = here / 'README.md'
long_description = readme.read_text(encoding='utf-8') if readme.exists() else cfg['description']

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=long_description,
    long_description_content_type='text/markdown',
    keywords=cfg['keywords'].split(),
    license=lic[0],
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url']},
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title(),
                 lic[1]] + ['Programming Language :: Python :: ' + v for v in py_versions[py_versions.index(min_python):]],
    # tutorials/ ships inside the wheel as microscopy_toolkit.tutorials, so `mtk quickstart` works from any install
    packages=setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']) + [cfg['lib_path'] + '.tutorials'],
    package_dir={cfg['lib_path'] + '.tutorials': 'tutorials'},
    include_package_data=True,
    package_data={cfg['lib_path']: ['*.yaml', '*.json'], cfg['lib_path'] + '.tutorials': ['*.ipynb']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    python_requires='>=' + min_python,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
